// The instance page follows its instance: every second it asks for the page's live part with
// the ETag of the one it shows (If-None-Match), and swaps in the new part only when the
// server answers 200, that is when the revision or what the instance waits for changed.
// What a person is doing survives a swap: the data typed in the form, the event picked, the
// open details, the diagram's zoom (diagram.js). Not while travel.js shows an earlier step.
(function () {
  const PERIOD_MS = 1000;
  const first = document.getElementById("live");
  if (!first) return;
  const id = first.dataset.instance;
  let busy = false;

  function keep(current, fresh) {
    // Values typed or picked, by element id, where the fresh part still has the element.
    for (const field of current.querySelectorAll("textarea[id], input[id]:not([type=hidden]), select[id]")) {
      const twin = fresh.querySelector("#" + CSS.escape(field.id));
      if (!twin || twin.tagName !== field.tagName) continue;
      if (field.tagName === "SELECT") {
        if (Array.from(twin.options).some((option) => option.value === field.value)) twin.value = field.value;
      } else if (field.type !== "range") {
        twin.value = field.value;
        if (field === document.activeElement && typeof field.selectionStart === "number") {
          twin.dataset.caret = field.selectionStart + "," + field.selectionEnd;
        }
      }
    }
    for (const details of current.querySelectorAll("details[id]")) {
      const twin = fresh.querySelector("details#" + CSS.escape(details.id));
      if (twin) twin.open = details.open;
    }
  }

  async function follow() {
    const current = document.getElementById("live");
    if (busy || !current || current.dataset.travel || document.hidden) return;
    busy = true;
    try {
      const answer = await fetch("/instances/" + encodeURIComponent(id) + "/live", {
        credentials: "same-origin",
        cache: "no-store",
        headers: {"If-None-Match": current.dataset.etag || ""},
      });
      if (answer.status !== 200) return; // 304: nothing changed
      const html = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = html.getElementById("live");
      const now = document.getElementById("live");
      if (!fresh || now !== current || current.dataset.travel) return;
      keep(current, fresh);
      const focused = document.activeElement && document.activeElement.id;
      const adopted = document.importNode(fresh, true);
      current.replaceWith(adopted);
      if (focused && current.contains(document.activeElement) === false) {
        const again = document.getElementById(focused);
        if (again && adopted.contains(again)) {
          again.focus();
          if (again.dataset.caret) {
            const [start, end] = again.dataset.caret.split(",").map(Number);
            again.setSelectionRange(start, end);
            delete again.dataset.caret;
          }
        }
      }
      document.dispatchEvent(new CustomEvent("turnout:swapped", {detail: {live: adopted}}));
      const note = document.getElementById("live-note");
      if (note) note.textContent = "Updated: revision " + adopted.dataset.revision;
      relative();
      checkData();
    } catch (error) {
      // The server may be restarting; the next tick tries again.
    } finally {
      busy = false;
    }
  }

  function relative() {
    // Due times and leases also say how far away they are, by the browser's clock.
    for (const shown of document.querySelectorAll("#live time.due")) {
      const due = Date.parse(shown.getAttribute("datetime"));
      if (Number.isNaN(due)) continue;
      const seconds = Math.round((due - Date.now()) / 1000);
      const size = Math.abs(seconds);
      const amount = size < 90 ? size + " s" : size < 5400 ? Math.round(size / 60) + " min" : size < 172800 ? Math.round(size / 3600) + " h" : Math.round(size / 86400) + " d";
      shown.title = seconds >= 0 ? "in " + amount : amount + " ago";
      let tail = shown.nextElementSibling;
      if (!tail || !tail.classList.contains("due-in")) {
        tail = document.createElement("span");
        tail.className = "due-in muted";
        shown.after(tail);
      }
      tail.textContent = " (" + shown.title + ")";
    }
  }

  function checkData() {
    // The data must be JSON: said while typing (the server says it again if sent).
    const data = document.getElementById("data");
    const problem = document.getElementById("data-problem");
    if (!data || !problem) return;
    let message = "";
    if (data.value.trim()) {
      try {
        JSON.parse(data.value);
      } catch (error) {
        message = "The data is not valid JSON: " + error.message;
      }
    }
    problem.textContent = message;
    problem.hidden = !message;
    data.setAttribute("aria-invalid", message ? "true" : "false");
  }

  document.addEventListener("input", (event) => {
    if (event.target && event.target.id === "data") checkData();
  });
  document.addEventListener("turnout:refresh", follow);
  document.addEventListener("visibilitychange", follow);
  setInterval(follow, PERIOD_MS);
  setInterval(relative, 15000);
  relative();
  checkData();
})();
