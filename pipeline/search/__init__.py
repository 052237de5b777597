"""The budget search's parts: the budget expression, the ratio ladder, candidate timing and the selection."""
