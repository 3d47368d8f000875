// reelforge serve: follow a session while it runs, and post the action buttons without
// leaving the page. Everything shown comes from the server: state.json says what changed
// since the version this page has (a poll costs what changed), and the changed parts are
// fetched as HTML the server rendered (and escaped).
(function () {
  "use strict";
  const body = document.body;

  // -- a shot's clip plays with its voice: the clip is silent, the voice a separate file
  function voiceOf(video) {
    return video.dataset.voice ? document.getElementById(video.dataset.voice) : null;
  }
  function follow(event) {
    const video = event.target;
    if (!(video instanceof HTMLVideoElement)) return;
    const voice = voiceOf(video);
    if (!voice) return;
    if (event.type === "play") {
      voice.currentTime = Math.min(video.currentTime, voice.duration || video.currentTime);
      voice.play().catch(function () {});
    } else if (event.type === "pause" || event.type === "ended") {
      voice.pause();
    } else if (event.type === "seeked") {
      voice.currentTime = video.currentTime;
    } else if (event.type === "volumechange") {
      voice.muted = video.muted;
      voice.volume = video.volume;
    }
  }
  ["play", "pause", "ended", "seeked", "volumechange"].forEach(function (type) {
    document.addEventListener(type, follow, true);  // media events do not bubble: capture them
  });

  // -- the new film form (the list page): start it, then open its page once it exists
  const newForm = document.getElementById("new-film");
  if (newForm) {
    newForm.addEventListener("submit", async function (event) {
      event.preventDefault();
      const note = document.getElementById("new-status");
      const button = newForm.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        const r = await fetch(newForm.action, {method: "POST", body: new FormData(newForm),
                                               headers: {"Accept": "application/json"}, credentials: "same-origin"});
        const answer = await r.json();
        if (!answer.ok) { note.textContent = answer.message; note.className = "error"; button.disabled = false; return; }
        note.textContent = "Starting…";
        const job = answer.job;
        const wait = async function () {
          const j = await (await fetch(job, {cache: "no-store", credentials: "same-origin"})).json();
          if (j.url) { window.location.href = j.url; return; }
          if (!j.running && j.last) { note.textContent = j.last.label + ": " + j.last.message;
                                      note.className = j.last.ok ? "" : "error"; button.disabled = false; return; }
          setTimeout(wait, 300);
        };
        wait();
      } catch (e) {
        note.textContent = "could not reach the server: " + e;
        button.disabled = false;
      }
    });
  }

  const stateUrl = body.dataset.stateUrl;
  const fragmentUrl = body.dataset.fragmentUrl;
  if (!stateUrl) return;
  let timer = null;
  let version = "";

  async function fragment(part) {
    const r = await fetch(fragmentUrl + "/" + part, {cache: "no-store", credentials: "same-origin"});
    if (!r.ok) throw new Error(part + ": " + r.status);
    const t = document.createElement("template");
    t.innerHTML = (await r.text()).trim();
    return t.content.firstElementChild;
  }

  async function replace(id, part) {
    const el = document.getElementById(id);
    if (el && isPlaying(el)) return false;  // never under a viewer: fetched once it stops
    const fresh = await fragment(part);
    if (el && fresh) el.replaceWith(fresh);
    return true;
  }

  function isPlaying(el) {
    return Array.from(el.querySelectorAll("video, audio")).some(function (m) { return !m.paused && !m.ended; });
  }

  function showAction(s, busyNote) {
    const action = s.action || {};
    const holder = s.holder && !s.holder.mine ? s.holder : null;
    const box = document.getElementById("action");
    box.textContent = "";
    const span = document.createElement("span");
    if (busyNote) {
      span.className = "error";
      span.textContent = busyNote;
    } else if (holder) {
      span.className = "error";
      span.dataset.held = "1";
      span.textContent = "Being run by " + holder.text;
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
    if (busyNote) return;
    const locked = Boolean(action.running) || Boolean(holder);
    document.querySelectorAll("form[data-action] button").forEach(function (b) {
      b.disabled = locked;
      b.title = holder ? "being run by " + holder.text : (action.running ? "wait: " + action.running : b.title);
    });
  }

  async function poll() {
    let delay = 3000;
    try {
      const r = await fetch(stateUrl + "?since=" + encodeURIComponent(version), {cache: "no-store", credentials: "same-origin"});
      if (r.ok) {
        const s = await r.json();
        delay = s.active ? Math.max(250, s.poll_seconds * 1000) : 3000;
        let whole = true;
        if (!s.unchanged) {
          const summary = document.getElementById("summary");
          if (summary && summary.dataset.version !== s.summary_key) {
            whole = (await replace("summary", "summary")) && whole;
          }
          const film = document.getElementById("film");
          if (film && film.dataset.version !== s.film_key) {
            whole = (await replace("film", "film")) && whole;
          }
          const cards = Array.from(document.querySelectorAll("article.shot"));
          const ids = cards.map(function (c) { return Number(c.dataset.shot); });
          const wanted = s.shots.map(function (x) { return x.id; });
          if (ids.join(",") !== wanted.join(",")) {
            whole = (await replace("shots", "shots")) && whole;
          } else {
            for (const shot of s.shots) {
              const card = document.getElementById("shot-" + shot.id);
              if (card && card.dataset.version !== shot.version) {
                whole = (await replace("shot-" + shot.id, "shot-" + shot.id)) && whole;
              }
            }
          }
          if (whole) version = s.version;  // a part skipped under a viewer is fetched next time
          body.dataset.version = s.version;
        }
        showAction(s);
      }
    } catch (e) {
      // the server may be restarting: try again later
    }
    timer = setTimeout(poll, delay);
  }

  document.addEventListener("submit", async function (event) {
    const form = event.target;
    if (!form.matches || !form.matches("form[data-action]") || form.id === "new-film") return;
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
