"""Workflows: orchestration across concerns (data, inference, metrics): the evaluate-a-manifest report."""
