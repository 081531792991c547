// The instance page follows its instance: when the revision changes, the live part is
// fetched again and swapped in place, without reloading the page.
(function () {
  const live = document.getElementById("live");
  if (!live) return;
  const id = live.dataset.instance;
  async function refresh() {
    try {
      const answer = await fetch("/api/instances/" + encodeURIComponent(id), {credentials: "same-origin"});
      if (!answer.ok) return;
      const instance = await answer.json();
      const current = document.getElementById("live");
      if (String(instance.revision) === current.dataset.revision) return;
      const page = await fetch(window.location.pathname, {credentials: "same-origin"});
      const html = new DOMParser().parseFromString(await page.text(), "text/html");
      const fresh = html.getElementById("live");
      if (fresh) current.replaceWith(fresh);
    } catch (error) {
      // The server may be restarting; the next tick tries again.
    }
  }
  setInterval(refresh, 1000);
})();
