"""The web app (salad_app) in a real headless browser: Debian's Chromium driven by Playwright.

The app serves SALAD-init built from the embedded real parts (SmolLM2-135M-Instruct + Whisper tiny.en, the demo's
transcript adapter): a random tiny model answers with nothing readable, a real one answers the question. The
browser uploads a WAV of a known question (flite), presses Ask, reads the three columns and saves a screenshot to
test-artifacts/salad_app.png.
"""

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
QUESTION = "What is the capital of France?"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def real_app():
    from modeling_salad import build_salad
    from salad_demo.assets import prepare_assets
    from salad_demo.presets import RECIPE

    from evaluation.cascade import WhisperASR
    from evaluation.loading import load_base_llm
    from salad_app.app import SaladApp

    assets = prepare_assets()
    model, processor = build_salad(assets["llm"], assets["whisper"], **RECIPE)
    base, base_tokenizer = load_base_llm(assets["llm"], "cpu")
    return SaladApp(model.eval(), processor, base, base_tokenizer, WhisperASR.from_pretrained(assets["whisper"]),
                    tts="flite:slt", max_new_tokens=16)


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory):
    import soundfile as sf

    from datasets_scripts.tts import get_backend

    audio, rate = get_backend("flite").synthesize(QUESTION, "slt")
    path = tmp_path_factory.mktemp("app") / "question.wav"
    sf.write(path, audio, rate)
    return path


@pytest.mark.assets
@pytest.mark.slow
def test_browser_uploads_a_spoken_question_and_reads_three_answers(real_app, question_wav, tmp_path):
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver; make system-deps)")
    from playwright.sync_api import sync_playwright

    port = free_port()
    page_app = real_app.build_ui()
    page_app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS,
                viewport={"width": 1400, "height": 900})
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            page.locator("#audio-input input[type=file]").set_input_files(str(question_wav))
            page.get_by_test_id("audio-player-Spoken question").wait_for(state="attached", timeout=60_000)  # uploaded
            page.wait_for_load_state("networkidle")
            page.locator("#ask-button").click()
            salad_answer = page.locator("#salad-answer textarea")
            page.wait_for_function("() => document.querySelector('#salad-answer textarea').value.trim() !== '' "
                                   "|| document.querySelector('.toast-body.error') !== null", timeout=300_000)
            page.screenshot(path=str(ARTIFACTS / "salad_app.png"), full_page=True)
            errors = page.locator(".toast-body.error").all_inner_texts()
            answers = {name: page.locator(f"#{name} textarea").input_value()
                       for name in ("salad-answer", "base-answer", "cascade-transcript", "cascade-answer")}
            salad_info = page.locator("#salad-info").inner_text()
            browser.close()
    finally:
        page_app.close()
    assert not errors, f"the page shows an error: {errors}"
    assert salad_answer and answers["salad-answer"].strip(), answers
    assert "capital" in answers["cascade-transcript"].lower(), answers
    assert answers["base-answer"].strip() and answers["cascade-answer"].strip(), answers
    assert "audio placeholders" in salad_info and "ms" in salad_info


def test_salad_app_console_script_refuses_a_missing_model(tmp_path):
    script = Path(sys.executable).parent / "salad-app"
    if not script.exists():
        pytest.fail(f"{script} is not installed: reinstall the package (make install) to get its console scripts.")
    proc = subprocess.run([str(script), "--model", str(tmp_path / "no-such-model")], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = subprocess.run([str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2 and "make demo" in proc.stderr


def test_app_answers_a_typed_question_through_its_spoken_version(real_app):
    answers = real_app.ask(None, QUESTION)
    assert answers.salad.strip() and answers.base.strip()
    assert "capital" in answers.transcript.lower()
    assert "reads the typed question" in answers.base_info
    with pytest.raises(ValueError, match="Record or upload a spoken question, or type one"):
        real_app.ask(None, "  ")
