"""Jinja templates of the model card and the dataset card, shipped as package data, and their one renderer."""

from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent


def render(template_name: str, **context) -> str:
    """Render a template of this folder; an undefined variable is an error, never a silent blank."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    if not (TEMPLATE_DIR / template_name).is_file():
        raise FileNotFoundError(f"card template {template_name!r} not found in {TEMPLATE_DIR}")
    env = Environment(loader=FileSystemLoader(str(TEMPLATE_DIR)), undefined=StrictUndefined, keep_trailing_newline=True)
    return env.get_template(template_name).render(**context)
