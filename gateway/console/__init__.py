"""The web console: pages for the people who work incidents (and, from i14-changes, changes and
problems), rendered with the gateway's one Jinja environment (gateway/html.py) in
gateway/pages/layout.html, in the signed-in person's language (catalogue.py), behind the
sign-in of gateway/signin.py (base.py's `signed_in_with`)."""
