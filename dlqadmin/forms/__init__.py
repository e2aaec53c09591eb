"""Dashboard forms: validation of the input only. Writes go through services: the ``save``
methods of the connection and source forms call dlqadmin.services.connections / sources (which
validate the domain rules, audit, and raise ValidationError; ``add_service_errors`` shows those
on the form). One module per area; the forms are imported from here."""

from dlqadmin.forms.audit import AuditFilterForm
from dlqadmin.forms.connections import ConnectionForm, SourceForm
from dlqadmin.forms.groups import GroupStatusForm
from dlqadmin.forms.messages import EditForm, RedriveForm
from dlqadmin.forms.schemas import MultipleFileField, StoredSchemaForm

__all__ = [
    "AuditFilterForm",
    "ConnectionForm",
    "EditForm",
    "GroupStatusForm",
    "MultipleFileField",
    "RedriveForm",
    "SourceForm",
    "StoredSchemaForm",
]
