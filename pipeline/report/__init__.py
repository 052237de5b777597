"""Turn results into what people and CI read: the gate's JUnit and Markdown, the HTML/Markdown report."""
