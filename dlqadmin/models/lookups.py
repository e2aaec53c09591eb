"""``field__any=[...]``: ``field = ANY(%s)`` with the whole list as one array parameter.

``pk__in=ids`` renders one placeholder per id, and each one costs Python on every query:
Django prepares every value, psycopg's client-side cursor splits the SQL at each placeholder
and quotes each value into the text. The redrive path passes chunks of hundreds to thousands of
ids per statement, where that was a fifth of the worker's CPU (issue 15). Same rows, same
plans (``= ANY(array)`` uses the index like ``IN (list)``); an empty list matches nothing."""

from __future__ import annotations

from django.db.models import Field, ForeignObject, Lookup


class Any(Lookup):
    lookup_name = "any"
    prepare_rhs = False

    def get_prep_lookup(self):
        return [self.lhs.output_field.get_prep_value(v) for v in self.rhs]

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        array = f"{self.lhs.output_field.cast_db_type(connection)}[]"
        return f"{lhs} = ANY(%s::{array})", [*lhs_params, list(self.rhs)]


Field.register_lookup(Any)
ForeignObject.register_lookup(Any)  # ``dead_letter_id__any``: relations keep their own lookups
