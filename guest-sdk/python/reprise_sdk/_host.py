"""The one place that reaches componentize-py's generated bindings.

They exist only inside a component (componentize-py generates `wit_world`
while it builds one), so they are imported on first use: the rest of the
package imports on a plain Python too — the build command runs there.
Inside a component, `_component` has imported them at build time (module
files cannot be read at run time), so the first use finds them loaded.
"""

_bindings = None


def bindings():
    """`(durable, types, Ok, Err)`: the `durable` interface, the WIT types and
    componentize-py's result cases."""
    global _bindings
    if _bindings is None:
        try:
            from componentize_py_types import Err, Ok
            from wit_world.imports import durable, types
        except ImportError as error:
            raise RuntimeError(
                "reprise_sdk's workflow calls work only inside a workflow component: "
                "build it with `python3 -m reprise_sdk.build app.py -o app.wasm`"
            ) from error
        _bindings = (durable, types, Ok, Err)
    return _bindings
