"""What the JupyterLab views share: a figure as PNG bytes for an ipywidgets.Image, and `LazyWidget`, an
ipywidgets view built on first use (ipywidgets is imported only then)."""
from __future__ import annotations

import io


def png_bytes(fig, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes (what an ipywidgets.Image shows)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


class LazyWidget:
    """An ipywidgets view built on first use. A subclass gives `_build` (its widgets by name, the view under
    "box"), `_refresh` (draws the current state into them) and CONTROL_NAMES (what `controls` returns)."""

    CONTROL_NAMES: tuple = ()
    _widgets: dict | None = None

    @property
    def widget(self):
        """The ipywidgets view (built on first use)."""
        if self._widgets is None:
            self._widgets = self._build()
            self._refresh()
        return self._widgets["box"]

    @property
    def controls(self) -> dict:
        """The widget's controls by name (CONTROL_NAMES); builds the widget."""
        _ = self.widget
        return {k: self._widgets[k] for k in self.CONTROL_NAMES}
