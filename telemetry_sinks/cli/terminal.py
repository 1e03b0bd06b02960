"""The terminal side of the command line: colour, aligned tables and progress bars.

Tables are aligned, and coloured only when the stream is a terminal and
``NO_COLOR`` is not set.  Progress bars (tqdm's when it is installed, else a
built-in line) go to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import IO, Any

# --------------------------------------------------------------------------- colour and tables

_STYLES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


def color_enabled(stream: IO[str]) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def paint(text: str, style: str | None, on: bool) -> str:
    if not on or not style or not text:
        return text
    codes = ";".join(_STYLES[s] for s in style.split("+"))
    return f"\x1b[{codes}m{text}\x1b[0m"


def table(rows: list[list[Any]], out: IO[str], header: bool = True, color: bool | None = None) -> None:
    """Aligned columns; a cell is text or ``(text, style)``; padding is computed on the plain text."""
    if not rows:
        return
    on = color_enabled(out) if color is None else color
    cells = [[c if isinstance(c, tuple) else (str(c), None) for c in row] for row in rows]
    widths = [max(len(r[i][0]) for r in cells) for i in range(len(cells[0]))]
    for index, row in enumerate(cells):
        last = len(row) - 1
        parts = []
        for i, ((text, style), width) in enumerate(zip(row, widths)):
            pad = "" if i == last else " " * (width - len(text))
            parts.append(paint(text, "bold" if header and index == 0 else style, on) + pad)
        out.write("  ".join(parts).rstrip() + "\n")
        if header and index == 0:
            out.write(paint("  ".join("-" * w for w in widths), "dim", on) + "\n")


# --------------------------------------------------------------------------- progress


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class Progress:
    """A progress bar on stderr: bytes done of ``total`` (None: unknown) and items, with rates.

    Uses tqdm when it is importable, else a built-in line (redrawn in place on a
    terminal, printed once a second otherwise).  Disabled: every call is a no-op.
    """

    def __init__(self, desc: str, total: int | None, unit: str = "lines", enabled: bool = True) -> None:
        self.desc, self.total, self.unit, self.enabled = desc, total or None, unit, enabled
        self.done = self.items = 0
        self.start = self._last = time.monotonic()
        self._tty = sys.stderr.isatty() if enabled else False
        self._bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                try:  # a terminal that reports no size (a bare pty) gets a fixed width
                    sized = os.get_terminal_size(sys.stderr.fileno()).columns > 0
                except (OSError, ValueError):
                    sized = False
                self._bar = tqdm(total=self.total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                                 file=sys.stderr, mininterval=0.2, dynamic_ncols=sized,
                                 ncols=None if sized else 100, nrows=None if sized else 24)

    def update(self, nbytes: int, items: int = 1) -> None:
        if not self.enabled:
            return
        self.done += nbytes
        self.items += items
        now = time.monotonic()
        if self._bar is not None:
            self._bar.update(nbytes)
            if now - self._last >= 0.5:
                self._last = now
                self._bar.set_postfix_str(self._items_text(now), refresh=False)
            return
        if now - self._last >= (0.1 if self._tty else 1.0):
            self._last = now
            self._draw(now)

    def _items_text(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        return f"{self.items:,} {self.unit} {self.items / elapsed:,.0f} {self.unit}/s"

    def _line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        parts = [f"{self.desc}:"]
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * 20)
            parts.append(f"{fraction * 100:5.1f}% |{'#' * filled}{'.' * (20 - filled)}|")
            parts.append(f"{_human(self.done)}/{_human(self.total)}")
        else:
            parts.append(_human(self.done))
        parts.append(self._items_text(now))
        parts.append(f"{_human(self.done / elapsed)}/s")
        if self.total and self.done and self.done < self.total:
            eta = (self.total - self.done) * elapsed / self.done
            parts.append(f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        else:
            parts.append(f"in {elapsed:.1f}s")
        return " ".join(parts)

    def _draw(self, now: float, final: bool = False) -> None:
        if self._tty:
            sys.stderr.write("\r" + self._line(now) + "\x1b[K" + ("\n" if final else ""))
        else:
            sys.stderr.write(self._line(now) + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        now = time.monotonic()
        if self._bar is not None:
            self._bar.set_postfix_str(self._items_text(now), refresh=True)
            self._bar.close()
        else:
            self._draw(now, final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_wanted(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "progress", False)) or sys.stderr.isatty()


def file_size(path: str | None) -> int | None:
    if path is None or path == "-":
        return None
    try:
        return os.path.getsize(path) if os.path.isfile(path) else None
    except OSError:
        return None



__all__ = ["Progress", "color_enabled", "file_size", "paint", "progress_wanted", "table"]
