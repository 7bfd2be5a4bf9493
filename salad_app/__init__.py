"""The SALAD web app (`salad-app`, and `app.py` for a Hugging Face Space): a spoken question answered by SALAD, its
base LLM and an ASR cascade, side by side. Gradio is the optional extra `[app]`."""
