"""The embeddable session viewer: signed links, server-rendered charts and timelines."""
