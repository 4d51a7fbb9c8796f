"""The web console: pages for the people who work incidents, changes and problems."""
