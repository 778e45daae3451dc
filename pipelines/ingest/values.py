"""A delivered column as its distinct values and one integer code per row.

Large deliveries are checked, judged and sorted on their distinct values (a gene table of
20 million rows has a few hundred sample ids and ~20,000 gene ids), and their string columns
are read from Parquet dictionary-encoded, so each distinct string is held in memory once.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def distinct_codes(values: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The distinct values of ``values`` (null last, if any row is null) and each row's
    position in them. Works on plain and dictionary-encoded columns alike."""
    if isinstance(values, pa.ChunkedArray):
        if pa.types.is_dictionary(values.type):
            encoded = values.unify_dictionaries().combine_chunks()
        else:
            # one hash pass over the whole column: cheaper than a dictionary per chunk, unified
            encoded = pc.dictionary_encode(values.combine_chunks())
    else:
        encoded = values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)
    dictionary, indices = encoded.dictionary, encoded.indices
    if indices.null_count:
        indices = pc.fill_null(indices, len(dictionary))
        dictionary = pa.concat_arrays([dictionary, pa.nulls(1, dictionary.type)])
    return dictionary, indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def in_set(values: pa.ChunkedArray, value_set: pa.Array, normalise=None) -> pa.ChunkedArray:
    """Per row, whether ``values`` (after ``normalise``, e.g. trim and upper-case) is in
    ``value_set``; a null row is in it when ``value_set`` holds a null. A dictionary-encoded
    chunk is judged on its dictionary and the verdicts taken by index, never row by row."""
    if pa.types.is_dictionary(value_set.type):
        value_set = value_set.dictionary_decode()
    has_null = value_set.null_count > 0

    def judge(array: pa.Array) -> pa.Array:
        array = normalise(array) if normalise else array
        return pc.fill_null(pc.is_in(array, value_set=value_set, skip_nulls=not has_null), False)

    parts = []
    for chunk in values.chunks:
        if pa.types.is_dictionary(chunk.type):
            hit = judge(chunk.dictionary).take(chunk.indices)
        else:
            hit = judge(chunk)
        parts.append(pc.fill_null(hit, has_null))
    return pa.chunked_array(parts, pa.bool_())
