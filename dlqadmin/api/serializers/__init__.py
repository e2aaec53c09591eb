"""API serializers, one module per resource (see dlqadmin/api/views/)."""
