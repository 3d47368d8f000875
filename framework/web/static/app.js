// reelforge serve: follow a session while it runs, and post the action buttons without
// leaving the page. Everything shown comes from the server: state.json says what changed,
// and the changed parts are fetched as HTML the server rendered (and escaped).
(function () {
  "use strict";
  const body = document.body;
  const stateUrl = body.dataset.stateUrl;
  const fragmentUrl = body.dataset.fragmentUrl;
  if (!stateUrl) return;
  let timer = null;

  async function fragment(part) {
    const r = await fetch(fragmentUrl + "/" + part, {cache: "no-store", credentials: "same-origin"});
    if (!r.ok) throw new Error(part + ": " + r.status);
    const t = document.createElement("template");
    t.innerHTML = (await r.text()).trim();
    return t.content.firstElementChild;
  }

  async function replace(id, part) {
    const el = document.getElementById(id);
    const fresh = await fragment(part);
    if (el && fresh) el.replaceWith(fresh);
  }

  function showAction(action, busyNote) {
    const box = document.getElementById("action");
    box.textContent = "";
    const span = document.createElement("span");
    if (busyNote) {
      span.className = "error";
      span.textContent = busyNote;
    } else if (action.running) {
      span.className = "busy";
      span.dataset.busy = "1";
      span.textContent = "Running: " + action.running + "…";
    } else if (action.last) {
      span.className = action.last.ok ? "" : "error";
      span.dataset.lastOk = action.last.ok ? "1" : "0";
      span.textContent = action.last.label + ": " + action.last.message;
    }
    box.appendChild(span);
    document.querySelectorAll("form[data-action] button").forEach(function (b) {
      b.disabled = Boolean(action.running);
    });
  }

  async function poll() {
    let delay = 3000;
    try {
      const r = await fetch(stateUrl + "?versions=1", {cache: "no-store", credentials: "same-origin"});
      if (r.ok) {
        const s = await r.json();
        delay = s.active ? Math.max(250, s.poll_seconds * 1000) : 3000;
        const summary = document.getElementById("summary");
        if (summary && summary.dataset.version !== s.summary_version) await replace("summary", "summary");
        const film = document.getElementById("film");
        if (film && film.dataset.version !== s.film.version) await replace("film", "film");
        const cards = Array.from(document.querySelectorAll("article.shot"));
        const ids = cards.map(function (c) { return Number(c.dataset.shot); });
        const wanted = s.shots.map(function (x) { return x.id; });
        if (ids.join(",") !== wanted.join(",")) {
          await replace("shots", "shots");
        } else {
          for (const shot of s.shots) {
            const card = document.getElementById("shot-" + shot.id);
            if (card && card.dataset.version !== shot.version) await replace("shot-" + shot.id, "shot-" + shot.id);
          }
        }
        showAction(s.action);
        body.dataset.version = s.version;
      }
    } catch (e) {
      // the server may be restarting: try again later
    }
    timer = setTimeout(poll, delay);
  }

  document.addEventListener("submit", async function (event) {
    const form = event.target;
    if (!form.matches || !form.matches("form[data-action]")) return;
    event.preventDefault();
    try {
      const r = await fetch(form.action, {method: "POST", body: new FormData(form),
                                          headers: {"Accept": "application/json"},
                                          credentials: "same-origin"});
      const answer = await r.json();
      if (!answer.ok) showAction({}, answer.message);
    } catch (e) {
      showAction({}, "could not reach the server: " + e);
    }
    clearTimeout(timer);
    poll();
  });

  timer = setTimeout(poll, 500);
})();
