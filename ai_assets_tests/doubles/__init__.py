"""Test doubles for the outside world; first of all a loopback Anthropic Messages API.

`MessagesAPIServer` is a real HTTP server on 127.0.0.1 that the real `anthropic` SDK talks to
through `base_url`, with a deterministic oracle and injectable latency, rate limits and faults.
"""

from ai_assets_tests.doubles.messages_api_server import (
    BATCH_OUTCOMES,
    CONNECTION_FAULTS,
    ERROR_FAULTS,
    FAULT_KINDS,
    MALFORMED_FAULTS,
    MessagesAPIServer,
    RequestRecord,
    ServerConfig,
    ServerStats,
)
from ai_assets_tests.doubles.oracle import (
    LabelOracle,
    LabelVerdict,
    Oracle,
    OracleRequest,
    banking77_labels,
    estimate_tokens,
    shape_tool_input,
    text_key,
)
from ai_assets_tests.doubles.receivers import ReceivedMail, ReceivedRequest, SmtpReceiver, WebhookReceiver

__all__ = [
    "BATCH_OUTCOMES", "CONNECTION_FAULTS", "ERROR_FAULTS", "FAULT_KINDS", "MALFORMED_FAULTS",
    "LabelVerdict", "LabelOracle", "MessagesAPIServer", "Oracle", "OracleRequest", "RequestRecord",
    "ServerConfig", "ServerStats", "banking77_labels", "estimate_tokens", "shape_tool_input",
    "text_key",
    "ReceivedMail", "ReceivedRequest", "SmtpReceiver", "WebhookReceiver",
]
