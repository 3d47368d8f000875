"""`reelforge serve`: a small local web app over the sessions (framework.web.app), and the
templates it shares with `reelforge report` (framework.report)."""
