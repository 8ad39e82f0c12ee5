"""Where the checkout's own files are (config.properties, handlers/, model/, build/, model_store/): the one
definition the development tools (export, ops, loadtest, tests) share."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
