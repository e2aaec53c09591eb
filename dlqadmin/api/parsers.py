"""JSON body parsing that turns every malformed body into a 400 (ParseError)."""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's strict parser (rejects NaN/Infinity); absurdly deep nesting is a 400 too."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON is nested too deeply") from None


PARSER_CLASSES = [JSONParser]
