"""The names a client enqueues by (no DBOS import: a client needs only these)."""

FILM_QUEUE = "reelforge_films"
RENDER_QUEUE = "reelforge_renders"
FILM_WORKFLOW = "reelforge_film"
RENDER_WORKFLOW = "reelforge_render"
#: DBOS workflow statuses of a workflow still to be waited on.
UNFINISHED = ("PENDING", "ENQUEUED", "DELAYED")
