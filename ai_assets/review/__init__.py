"""Layer 5: people in the loop — the review queue, reviewers' decisions applied through the
action path, escalation of overdue items, and the labelled rows the next training uses."""
