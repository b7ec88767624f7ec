"""JSON at the boundary: every payload crosses it as JSON text."""

import json


def encode(value, what):
    """Compact JSON (the form the Rust SDK writes), or a TypeError/ValueError
    that names `what` and says what to pass."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except TypeError as error:
        raise TypeError(
            f"{what} must be JSON-able (dict with str keys, list, tuple, str, int, float, bool "
            f"or None): {error}"
        ) from None
    except ValueError as error:
        raise ValueError(f"{what} must be JSON-able: {error} (JSON has no NaN or infinity)") from None


def decode_details(details_json):
    """Details from the wire: parsed when they are JSON, else the text."""
    if details_json is None:
        return None
    try:
        return json.loads(details_json)
    except ValueError:
        return details_json


def encode_details(details, what):
    if isinstance(details, str):
        # Text details are carried as a JSON string, so they always parse.
        return json.dumps(details, ensure_ascii=False)
    return encode(details, what)
