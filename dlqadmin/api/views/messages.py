"""messages/: list (the dashboard's filter language, keyset cursor), detail, edit, discard, resolve."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from dlqadmin import permissions as roles
from dlqadmin.api.pagination import next_link, page_size_from
from dlqadmin.api.serializers.message_edit import MessageEditSerializer
from dlqadmin.api.serializers.messages import (
    FILTER_SCHEMA,
    CountSerializer,
    MessageDetailSerializer,
    MessageListSerializer,
    SelectionSerializer,
    filter_from,
)
from dlqadmin.models import DeadLetter, DeadLetterStatus
from dlqadmin.selectors import dead_letter_page, dead_letters_for
from dlqadmin.services.dead_letters import (
    EditError,
    dead_letter_revise,
    dead_letters_archive,
    dead_letters_discard,
    dead_letters_resolve,
)

from .base import ApiViewSet
from .connections import ERRORS

_MANY = {"many": True, "explode": True}
_FILTER = FILTER_SCHEMA["properties"]
FILTER_PARAMETERS = [
    OpenApiParameter("source", str, description="Source id or name (repeatable).", **_MANY),
    OpenApiParameter("connection", str, description="Connection id or name (repeatable).", **_MANY),
    OpenApiParameter("status", str, enum=DeadLetterStatus.values, description="Repeatable.", **_MANY),
    OpenApiParameter(
        "reason", str, description="Broker reason, e.g. rejected, expired (repeatable).", **_MANY
    ),
    OpenApiParameter(
        "error_group", _FILTER["error_group"], description="Error group id (repeatable).", explode=True
    ),
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="failed_at >= since (ISO-8601)."),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="failed_at < until (ISO-8601)."),
    OpenApiParameter(
        "header",
        _FILTER["header"],
        description="name:value, a header with exactly that value (repeatable, all match).",
        explode=True,
    ),
    OpenApiParameter(
        "q",
        _FILTER["q"],
        description="Free text in the error class/message (any case) and the first 4 KiB of the raw "
        "payload (exact bytes); a message is searchable a few seconds after it is stored (for a caller who "
        "sees masked messages: only where no masking rule applies, so masked values cannot be probed).",
    ),
    OpenApiParameter("max_id", _FILTER["max_id"], description="Only messages with id <= max_id."),
    OpenApiParameter("cursor", str, description="The `next` cursor of the previous page."),
    OpenApiParameter(
        "page_size", {"type": "integer", "minimum": 1, "maximum": 500}, description="1 to 500 (default 50)."
    ),
]

MessagePage = inline_serializer(
    "MessagePage",
    fields={
        "next": serializers.URLField(allow_null=True, help_text="The next page, or null on the last one."),
        "results": MessageListSerializer(many=True),
    },
)


class MessageViewSet(ApiViewSet):
    queryset = DeadLetter.objects.none()  # for the schema; get_queryset is per user
    serializer_class = MessageDetailSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]
    filter_backends = []
    pagination_class = None
    pages_by_hand = True  # keyset pages from dead_letter_page: {next, results}
    role_actions = {
        "partial_update": roles.EDIT,
        "discard": roles.DISCARD,
        "resolve": roles.RESOLVE,
        "archive": roles.RESOLVE,
    }

    def get_queryset(self):
        """Messages of the sources the user may see (dlqadmin.selectors.dead_letters_for)."""
        if getattr(self, "swagger_fake_view", False):
            return DeadLetter.objects.none()
        return dead_letters_for(self.request.user).select_related("source__connection", "error_group")

    @extend_schema(
        operation_id="api_v1_messages_list",
        summary="List dead letters (compact, newest failure first)",
        description="The same filter language as the dashboard and redrive jobs. Unknown keys are a 400.",
        parameters=FILTER_PARAMETERS,
        responses={200: MessagePage, **ERRORS},
    )
    def list(self, request):
        filters = filter_from(request.query_params)
        size = page_size_from(request)
        qs = dead_letters_for(request.user, filters).select_related("source")
        qs = qs.defer("payload", "key", "stacktrace", "headers")
        page = dead_letter_page(qs, cursor=request.query_params.get("cursor") or None, size=size)
        return Response(
            {
                "next": next_link(request, page.next_cursor),
                "results": MessageListSerializer(page.items, many=True, context={"request": request}).data,
            }
        )

    @extend_schema(
        summary="A dead letter: payload, typed headers, origin, error, history",
        parameters=[
            OpenApiParameter(
                "decode",
                bool,
                description="true: also return the decoded payload (decompressed; MessagePack, CBOR) "
                "in `decoded`, masked like the payload.",
            )
        ],
        responses={200: MessageDetailSerializer, **ERRORS},
    )
    def retrieve(self, request, pk=None):
        decode = request.query_params.get("decode", "false").lower()
        if decode not in ("true", "false", "1", "0"):
            raise serializers.ValidationError({"decode": "true or false"})
        context = {**self.get_serializer_context(), "decode": decode in ("true", "1")}
        return Response(MessageDetailSerializer(self.get_object(), context=context).data)

    @extend_schema(
        summary="Edit: store a revision (operator)",
        description="The original is never changed; a redrive sends the latest revision. A JSON "
        "message must stay valid JSON.",
        request=MessageEditSerializer,
        responses={200: MessageDetailSerializer, **ERRORS},
    )
    def partial_update(self, request, pk=None):
        letter = self.get_object()
        body = MessageEditSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            dead_letter_revise(
                actor=request.user,
                dead_letter=letter,
                remote_addr=self.remote_addr(),
                **body.edit(letter, actor=request.user),
            )
        except EditError as exc:
            field = body.payload_field
            raise EditError({(field if k == "payload" else k): v for k, v in exc.errors.items()}) from None
        return Response(self.get_serializer(letter).data)

    def _settle(self, request, service):
        body = SelectionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        count = service(actor=request.user, remote_addr=self.remote_addr(), **body.selection)
        return Response({"count": count})

    def _settle_action(summary: str, description: str):
        """An operator's bulk action over a selection: POST, body SelectionSerializer, answer
        CountSerializer."""
        schema = extend_schema(
            summary=f"{summary} messages by ids or filter (operator)",
            description=description,
            request=SelectionSerializer,
            responses={200: CountSerializer, **ERRORS},
        )
        return lambda view: schema(action(detail=False, methods=["post"])(view))

    _ONE_OF = 'Body: {"ids": [...]} or {"filter": {...}}, exactly one.'

    @_settle_action("Discard", _ONE_OF + " Messages in an active redrive job are left alone.")
    def discard(self, request):
        return self._settle(request, dead_letters_discard)

    @_settle_action("Resolve", _ONE_OF)
    def resolve(self, request):
        return self._settle(request, dead_letters_resolve)

    @_settle_action("Archive", "Kept for reference, out of the working views. " + _ONE_OF)
    def archive(self, request):
        return self._settle(request, dead_letters_archive)

    del _settle_action
