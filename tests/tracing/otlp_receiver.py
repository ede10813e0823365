"""A small OTLP/HTTP trace receiver: decodes the protobuf payloads the SDK's exporter posts."""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

#: Span kinds as OTLP numbers them.
KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    links: tuple[tuple[str, str, dict[str, Any]], ...]
    attributes: dict[str, Any]
    status: str
    status_message: str
    start_ns: int
    end_ns: int


@dataclass
class Receiver:
    spans: list[ReceivedSpan] = field(default_factory=list)
    lock: threading.Condition = field(default_factory=threading.Condition)
    port: int = 0

    def add(self, payload: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(payload)
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                received.extend(
                    _span(str(resource.get("service.name")), span) for span in scope_spans.spans
                )
        with self.lock:
            self.spans.extend(received)
            self.lock.notify_all()

    def snapshot(self) -> list[ReceivedSpan]:
        with self.lock:
            return list(self.spans)


def _span(service: str, span: Any) -> ReceivedSpan:
    return ReceivedSpan(
        service=service,
        name=span.name,
        kind=KINDS.get(span.kind, str(span.kind)),
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex(),
        links=tuple(
            (
                link.trace_id.hex(),
                link.span_id.hex(),
                {a.key: _value(a.value) for a in link.attributes},
            )
            for link in span.links
        ),
        attributes={a.key: _value(a.value) for a in span.attributes},
        status=STATUS.get(span.status.code, str(span.status.code)),
        status_message=span.status.message,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
    )


def serve(receiver: Receiver) -> ThreadingHTTPServer:
    """Start the receiver on a free port of 127.0.0.1 (``receiver.port``); stop with shutdown()."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            receiver.add(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def tree(spans: list[ReceivedSpan]) -> str:
    """The spans of one trace as an indented tree (start order), links noted."""
    by_parent: dict[str, list[ReceivedSpan]] = {}
    ids = {span.span_id for span in spans}
    for span in sorted(spans, key=lambda s: s.start_ns):
        parent = span.parent_id if span.parent_id in ids else ""
        by_parent.setdefault(parent, []).append(span)
    start = min(span.start_ns for span in spans)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for span in by_parent.get(parent, []):
            at_ms = (span.start_ns - start) / 1e6
            took_ms = (span.end_ns - span.start_ns) / 1e6
            notes = [f"{span.kind.lower()}", span.service]
            if "bgworkers.outcome" in span.attributes:
                notes.append(f"outcome={span.attributes['bgworkers.outcome']}")
            if span.status == "ERROR":
                notes.append(f"error={span.status_message[:40]}")
            for _trace, _span_id, link in span.links:
                notes.append(f"link:{link.get('kind', 'sender')}")
            indent = "  " * depth
            lines.append(
                f"{at_ms:9.1f} ms {took_ms:8.1f} ms  {indent}{span.name}  [{', '.join(notes)}]"
            )
            walk(span.span_id, depth + 1)

    walk("", 0)
    return "\n".join(lines)


def waterfall_svg(spans: list[ReceivedSpan]) -> str:
    """The trace as a waterfall (one bar per span, indented by depth), as an SVG document."""
    ids = {span.span_id: span for span in spans}

    def depth(span: ReceivedSpan) -> int:
        return 0 if span.parent_id not in ids else 1 + depth(ids[span.parent_id])

    ordered = _tree_order(spans)
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    label_w, bar_w, row_h = 330, 560, 22
    scale = bar_w / max(end - start, 1)
    colours = {"PRODUCER": "#4e79a7", "CONSUMER": "#59a14f", "CLIENT": "#f28e2b"}
    rows = []
    for n, span in enumerate(ordered):
        y = 30 + n * row_h
        x = label_w + (span.start_ns - start) * scale
        width = max((span.end_ns - span.start_ns) * scale, 2)
        colour = "#e15759" if span.status == "ERROR" else colours.get(span.kind, "#999")
        took = (span.end_ns - span.start_ns) / 1e6
        outcome = span.attributes.get("bgworkers.outcome", "")
        label = f"{'  ' * depth(span)}{span.name}"
        rows.append(
            f'<text x="8" y="{y + 14}" xml:space="preserve">{_escape(label)}</text>'
            f'<rect x="{x:.1f}" y="{y + 3}" width="{width:.1f}" height="14" fill="{colour}"/>'
            f'<text x="{min(x + width + 4, label_w + bar_w - 120):.1f}" y="{y + 14}" '
            f'class="note">{took:.1f} ms {_escape(str(outcome))}</text>'
        )
    height = 50 + len(ordered) * row_h
    total_ms = (end - start) / 1e6
    legend = (
        f'<text x="8" y="18" class="note">{total_ms:,.0f} ms in all; blue: producer, green: '
        "consumer, orange: client, red: error</text>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 20}" '
        f'height="{height}" font-family="monospace" font-size="12">'
        "<style>.note{fill:#555;font-size:11px}</style>"
        f'<rect width="100%" height="100%" fill="white"/>{legend}{"".join(rows)}</svg>\n'
    )


def _tree_order(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    ids = {span.span_id for span in spans}
    children: dict[str, list[ReceivedSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_ns):
        children.setdefault(span.parent_id if span.parent_id in ids else "", []).append(span)
    ordered: list[ReceivedSpan] = []

    def walk(parent: str) -> None:
        for span in children.get(parent, []):
            ordered.append(span)
            walk(span.span_id)

    walk("")
    return ordered


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
