"""Show the library's own lines next to the equation they compute (notebooks 03-06)."""
from __future__ import annotations

import inspect
from typing import Any, Callable


def show_source(function: Callable[..., Any]) -> None:
    """Display `function`'s source as a Markdown code block headed by its qualified name."""
    from IPython.display import Markdown, display

    display(Markdown(f"`{function.__module__}.{function.__qualname__}`:\n```python\n{inspect.getsource(function)}```"))
