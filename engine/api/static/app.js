// The instance page follows its instance: when the revision changes, the live part is
// fetched again and swapped in place, without reloading the page (not while travel.js shows
// an earlier step of its history: "now" asks for a refresh with a "turnout:refresh" event).
(function () {
  const live = document.getElementById("live");
  if (!live || live.dataset.follower) return; // a page with its own follower (instance.js)
  const id = live.dataset.instance;
  async function refresh() {
    try {
      const answer = await fetch("/api/instances/" + encodeURIComponent(id), {credentials: "same-origin"});
      if (!answer.ok) return;
      const instance = await answer.json();
      const current = document.getElementById("live");
      if (current.dataset.travel || String(instance.revision) === current.dataset.revision) return;
      const page = await fetch(window.location.pathname, {credentials: "same-origin"});
      const html = new DOMParser().parseFromString(await page.text(), "text/html");
      const fresh = html.getElementById("live");
      if (fresh && !current.dataset.travel) current.replaceWith(fresh);
    } catch (error) {
      // The server may be restarting; the next tick tries again.
    }
  }
  setInterval(refresh, 1000);
  document.addEventListener("turnout:refresh", refresh);
})();
