//! Summaries of status files: the default per placement and StatusSummary objects (CEL).
