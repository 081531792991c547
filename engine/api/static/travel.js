// Time travel on the instance page: previous/next and a slider step through the commits of
// the instance's history (its timeline, fetched once); each step redraws the diagram as it
// stood then and shows that step's state, status, time and context changes. "now" returns
// to the live page, which stops following changes while the past is shown.
(function () {
  let travel = null; // {live, timeline, index, saved, asked, note}: reset when the live part is swapped

  function current() {
    const live = document.getElementById("live");
    if (!live) return null;
    if (!travel || travel.live !== live) travel = {live: live, timeline: null, index: null, saved: null, asked: 0, note: ""};
    return travel;
  }

  function api(path) {
    return "/api/instances/" + encodeURIComponent(travel.live.dataset.instance) + path;
  }

  function byId(id) {
    return document.getElementById(id);
  }

  async function loaded() {
    if (travel.timeline) return travel.timeline;
    const answer = await fetch(api("/timeline"), {credentials: "same-origin"});
    const body = await answer.json();
    if (!answer.ok) throw new Error(body.message || answer.statusText);
    travel.timeline = body;
    const slider = byId("travel-slider");
    slider.max = String(Math.max(body.points.length, 1));
    if (!body.complete && body.divergence) {
      travel.note = "the history replays only up to entry " + (body.divergence.seq - 1) + ": " + body.divergence.reason;
    }
    return body;
  }

  function problem(message) {
    const shown = byId("travel-problem");
    shown.textContent = message;
    shown.hidden = !message;
  }

  function text(value) {
    return JSON.stringify(value);
  }

  function item(kind, parts) {
    const line = document.createElement("li");
    line.className = "diff-" + kind;
    const mark = document.createElement("span");
    mark.className = "diff-mark";
    mark.textContent = kind;
    line.append(mark, " ", ...parts);
    return line;
  }

  function code(value) {
    const shown = document.createElement("code");
    shown.textContent = value;
    return shown;
  }

  function changes(point) {
    const diff = point.context, lines = [];
    for (const [key, value] of Object.entries(diff.added)) lines.push(item("added", [code(key), " = " + text(value)]));
    for (const [key, value] of Object.entries(diff.removed)) lines.push(item("removed", [code(key), " (was " + text(value) + ")"]));
    for (const [key, values] of Object.entries(diff.changed)) {
      lines.push(item("changed", [code(key), ": " + text(values.old) + " \u2192 " + text(values.new)]));
    }
    if (!lines.length) {
      const none = document.createElement("li");
      none.className = "muted";
      none.textContent = "no change to the context";
      lines.push(none);
    }
    byId("travel-diff").replaceChildren(...lines);
  }

  function contextAt(points, index) {
    // The first point's changes are its whole context; each later one changes the one before.
    const context = {};
    for (const point of points.slice(0, index + 1)) {
      Object.assign(context, point.context.added);
      for (const key of Object.keys(point.context.removed)) delete context[key];
      for (const [key, values] of Object.entries(point.context.changed)) context[key] = values.new;
    }
    return context;
  }

  async function redraw(point) {
    const asked = ++travel.asked;
    const answer = await fetch(api("/diagram.svg?at=" + point.last), {credentials: "same-origin"});
    if (asked !== travel.asked) return; // a later step was asked for meanwhile
    if (!answer.ok) {
      problem((await answer.json()).message || answer.statusText);
      return;
    }
    const drawn = new DOMParser().parseFromString(await answer.text(), "image/svg+xml").documentElement;
    byId("diagram").replaceChildren(document.importNode(drawn, true));
  }

  async function show(index) {
    const timeline = await loaded();
    const points = timeline.points;
    if (!points.length) {
      problem(travel.note || "no step of this history replays");
      return;
    }
    index = Math.max(0, Math.min(index, points.length - 1));
    const point = points[index];
    if (travel.saved === null) {
      travel.saved = {diagram: byId("diagram").innerHTML, context: byId("context").textContent};
    }
    travel.index = index;
    travel.live.dataset.travel = "on";
    byId("travel-slider").value = String(index + 1);
    byId("travel-previous").disabled = index === 0;
    byId("travel-next").disabled = index === points.length - 1;
    byId("travel-now").disabled = false;
    byId("travel-where").textContent = "step " + (index + 1) + " of " + points.length;
    byId("travel-slider").setAttribute("aria-valuetext", "step " + (index + 1) + " of " + points.length + ": " + point.state);
    byId("travel-revision").textContent = String(point.revision);
    byId("travel-entries").textContent = "#" + point.first + (point.last > point.first ? "\u2013#" + point.last : "");
    byId("travel-time").textContent = point.at.slice(0, 19).replace("T", " ");
    byId("travel-state").textContent = point.active.length > 1 ? point.active.join(", ") : point.state;
    byId("travel-status").textContent = point.status;
    byId("travel-step").hidden = false;
    changes(point);
    problem(travel.note);
    byId("context").textContent = JSON.stringify(contextAt(points, index), null, 2);
    byId("context-when").textContent = "at revision " + point.revision;
    for (const row of document.querySelectorAll("#history tbody tr[data-seq]")) {
      const seq = Number(row.dataset.seq);
      row.classList.toggle("travel-step", seq >= point.first && seq <= point.last);
      row.classList.toggle("travel-later", seq > point.last);
    }
    await redraw(point);
  }

  function now() {
    if (travel.saved !== null) {
      byId("diagram").innerHTML = travel.saved.diagram;
      byId("context").textContent = travel.saved.context;
    }
    travel.asked++;
    travel.index = null;
    travel.saved = null;
    delete travel.live.dataset.travel;
    const slider = byId("travel-slider");
    slider.value = slider.max;
    slider.removeAttribute("aria-valuetext");
    byId("travel-previous").disabled = Number(slider.max) < 2;
    byId("travel-next").disabled = true;
    byId("travel-now").disabled = true;
    byId("travel-where").textContent = "now · revision " + travel.live.dataset.revision;
    byId("travel-step").hidden = true;
    byId("context-when").textContent = "";
    problem("");
    for (const row of document.querySelectorAll("#history tbody tr")) row.classList.remove("travel-step", "travel-later");
    document.dispatchEvent(new Event("turnout:refresh")); // catch up with what happened meanwhile
  }

  async function step(move) {
    if (!current()) return;
    try {
      const timeline = await loaded();
      const last = timeline.points.length - 1;
      // From now, "previous" is the step before the last one (the last one is now).
      const from = travel.index === null ? (timeline.complete ? last : last + 1) : travel.index;
      await show(from + move);
    } catch (error) {
      problem(String(error.message || error));
    }
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("button");
    if (!button || !current()) return;
    if (button.id === "travel-previous") step(-1);
    else if (button.id === "travel-next") step(1);
    else if (button.id === "travel-now") now();
  });

  document.addEventListener("input", function (event) {
    if (event.target.id !== "travel-slider" || !current()) return;
    show(Number(event.target.value) - 1).catch(function (error) {
      problem(String(error.message || error));
    });
  });
})();
