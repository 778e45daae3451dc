"""Great Expectations' Data Docs page views, with their Jinja templates compiled once per process.

GX makes a new Jinja environment for every ``build_data_docs`` call, so each delivery's page
parsed and compiled the same templates again: about 60% of rendering a page. These views share
one bytecode cache (keyed by template name and source checksum, so an edited template is compiled
again); the pages they render are the same. The site in ``pipelines.ingest.expectations`` names
them in its configuration.
"""

from __future__ import annotations

import jinja2
from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView


class _TemplateBytecode(jinja2.BytecodeCache):
    """Compiled templates kept in memory for the life of the process."""

    def __init__(self) -> None:
        self._compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        compiled = self._compiled.get(bucket.key)
        if compiled is not None:
            bucket.bytecode_from_string(compiled)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._compiled[bucket.key] = bucket.bytecode_to_string()

    def clear(self) -> None:
        self._compiled.clear()


TEMPLATE_BYTECODE = _TemplateBytecode()


class _TemplatesCompiledOnce:
    """A GX view whose Jinja environment shares :data:`TEMPLATE_BYTECODE`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = TEMPLATE_BYTECODE


class PageView(_TemplatesCompiledOnce, DefaultJinjaPageView):
    """A validation or suite page."""


class IndexPageView(_TemplatesCompiledOnce, DefaultJinjaIndexPageView):
    """The site's index."""
