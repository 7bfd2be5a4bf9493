"""Hugging Face Space entry point: the SALAD web app (`salad-app`) on 0.0.0.0:7860.

The model is $SALAD_MODEL (a Hub id or folder; default: the demo export runs/demo/salad-demo); extra `salad-app`
options come from $SALAD_APP_ARGS, e.g. "--trust-remote-code --tts flite:slt". Locally: `python app.py --model DIR`.
"""

import os
import shlex
import sys

from salad_app.app import DEFAULT_MODEL, main

if __name__ == "__main__":
    argv = sys.argv[1:] or ["--model", os.environ.get("SALAD_MODEL", DEFAULT_MODEL), "--host", "0.0.0.0",
                            *shlex.split(os.environ.get("SALAD_APP_ARGS", ""))]
    sys.exit(main(argv))
