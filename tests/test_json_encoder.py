"""The reused finding encoder gives exactly the text json.dumps gives (finding ids depend on it)."""
import json

from hypothesis import given, strategies as st

from harness.analyzers.interface import json_encoder

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(max_size=8)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=20)


@given(_values)
def test_same_text_as_json_dumps(value):
    for sep in ((",", ":"), (", ", ": ")):
        assert json_encoder(sep)(value) == json.dumps(value, sort_keys=True, default=str, separators=sep)
