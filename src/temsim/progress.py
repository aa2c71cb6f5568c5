"""Progress bars for long runs (tqdm), or a silent stand-in when they are off."""

from __future__ import annotations

__all__ = ["progress_bar"]


class _NullBar:
    """Accepts the calls of a tqdm bar and does nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, enabled: bool, description: str, unit: str = "slice"):
    """A tqdm bar over ``total`` ``unit``s when ``enabled``, else a silent stand-in."""
    if not enabled:
        return _NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit=unit)
