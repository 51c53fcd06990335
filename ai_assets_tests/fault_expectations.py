"""What the quarantine must say for each simulator fault that is quarantined: (stage, reason
prefix). Shared by the unit tests of validation and the end-to-end asset tests."""

QUARANTINE_REASON = {
    "unparseable": ("parse", "invalid_json"),
    "invalid_utf8": ("parse", "invalid_utf8"),
    "missing_field": ("validate", "expect_column_values_to_not_be_null("),
    "wrong_type": ("validate", "expect_column_values_to_be_of_type("),
    "empty_text": ("validate", "expect_column_value_lengths_to_be_between(text_normalised)"),
    "overlong_text": ("validate", "expect_column_value_lengths_to_be_between(text_normalised)"),
    "out_of_window": ("validate", "expect_column_values_to_be_between(received_at_utc)"),
    "renamed_field": ("validate", "expect_column_values_to_not_be_null(text)"),
}
