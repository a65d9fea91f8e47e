from collections.abc import Generator
from typing import Any, TypeVar

T = TypeVar("T")

def run(backend: Any, steps: Generator[tuple[Any, ...], Any, T]) -> T: ...
