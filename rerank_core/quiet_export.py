"""What torch's ONNX exporter and transformers print on every export that no user can act on, silenced while ours
runs: torchvision-missing notes, deprecation and shape-naming warnings, optimizer INFO lines, progress bars."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

# Loggers of the exporter's stack whose INFO/WARNING lines describe its internals, not the user's model.
EXPORTER_LOGGERS = ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Run the block with the exporter stack's notes, warnings and progress bars off (errors still show)."""
    from transformers.utils import logging as transformers_logging

    loggers = [logging.getLogger(name) for name in EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    bars = transformers_logging.is_progress_bar_enabled()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    transformers_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|transformers|onnxscript)\b")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if bars:
            transformers_logging.enable_progress_bar()
