"""pydantic's validation errors in the words of the config file: one line naming the key path and the value.

Models no hardware. Picks the error to show (an unknown key first, since a misspelt key also makes the key it was
meant to be "missing"), writes its location as the dotted path a user typed (``layer.stride``, not
``layers.0.stride``), rewords pydantic's messages, and suggests the closest valid key for a misspelt one. Ignores
every error but the first: the CLI reports one line and exits 2.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import ValidationError

from simulator.config.fields import Frozen


def first_error(err: ValidationError) -> Any:
    """The error to report: an unknown key before anything else, because a misspelt key also makes the key it
    was meant to be "missing", and the misspelling is what the user has to fix."""
    errors = err.errors(include_url=False)
    return next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])


def _known_keys() -> set[str]:
    models, keys = [Frozen], set()
    while models:
        model = models.pop()
        models.extend(model.__subclasses__())
        keys.update(model.model_fields)
    return keys


PAIR_FIELDS = ("kernel_size", "stride", "padding", "output_padding", "dilation")


def _plain_message(error: Any, loc: list[Any]) -> str:
    """pydantic's message for one error, in the words of the config (no "valid tuple", no "Input should")."""
    kind, ctx = error["type"], error.get("ctx") or {}
    field = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if kind == "tuple_type" or (kind in ("int_type", "int_parsing", "int_from_float") and field in PAIR_FIELDS):
        if field in PAIR_FIELDS:
            return "expected an int or a pair [h, w] of ints"
        if field == "input_shape":
            return "expected a list of 4 ints [N, C, H, W]"
        return "expected a list"
    plain = {
        "string_pattern_mismatch": "only letters, digits, '_' and '-' are allowed (it names a directory)",
        "int_type": "expected an integer", "int_parsing": "expected an integer",
        "int_from_float": "expected an integer, not a fraction", "float_type": "expected a number",
        "float_parsing": "expected a number", "bool_type": "expected true or false",
        "bool_parsing": "expected true or false", "string_type": "expected a string",
        "dict_type": "expected a mapping", "model_type": "expected a mapping", "list_type": "expected a list",
        "missing": "required key missing", "finite_number": "expected a finite number",
        "string_too_long": f"at most {(error.get('ctx') or {}).get('max_length')} characters",
    }
    if kind in plain:
        return plain[kind]
    bounds = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
              "less_than": ("<", "lt")}
    if kind in bounds:
        op, key = bounds[kind]
        return f"must be {op} {ctx.get(key)}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length')} entr{'y' if ctx.get('min_length') == 1 else 'ies'}"
    msg = str(error["msg"]).removeprefix("Value error, ")
    return msg.replace("Input should be", "expected").replace("a valid ", "")


def format_validation_error(err: ValidationError, source: str, single_layer: bool = False) -> str:
    """One line: ``source: dotted.key[index].path: message (got value)`` for the first error (unknown keys
    first), with the closest valid key suggested for a misspelt one."""
    first = first_error(err)
    loc = [p for p in first["loc"] if not (isinstance(p, str) and ("[" in p or p == "FileSource"))]
    if single_layer and loc[:2] == ["layers", 0]:
        loc = ["layer", *loc[2:]]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" if str(p).isidentifier() else f"[{str(p)!r}]"
                    for p in loc).removeprefix(".")
    where = f"{where}: " if where else ""
    msg = _plain_message(first, loc)
    got = ""
    if first["type"] not in ("value_error", "missing") and "input" in first:
        shown = repr(first["input"])
        got = f" (got {shown[:60]}{'...' if len(shown) > 60 else ''})"
    if first["type"] == "extra_forbidden":
        msg, got = "unknown key", ""
        close = difflib.get_close_matches(str(loc[-1]), sorted(_known_keys()), n=1, cutoff=0.75) if loc else []
        if close:
            msg += f" (did you mean {close[0]!r}?)"
    return f"{source}: {where}{msg}{got}"
