// On a narrow screen the instance list's filters start folded, so the list is in sight; their
// summary says how many are in use, and a tap unfolds them.
(function () {
  const box = document.getElementById("filter-box");
  if (box && window.matchMedia("(max-width: 700px)").matches) box.open = false;
})();

// Copy buttons: a button with data-copy puts that text on the clipboard and says so, in the
// button and in the page's status line (read out by screen readers).
(function () {
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    const field = document.createElement("textarea");
    field.value = text;
    field.setAttribute("readonly", "");
    field.style.position = "fixed";
    field.style.opacity = "0";
    document.body.appendChild(field);
    field.select();
    document.execCommand("copy");
    field.remove();
    return Promise.resolve();
  }
  document.addEventListener("click", async function (event) {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const text = button.dataset.copy;
    try {
      await copyText(text);
    } catch (error) {
      return;
    }
    button.classList.add("done");
    const status = document.getElementById("copied");
    if (status) status.textContent = "Copied " + text;
    setTimeout(function () { button.classList.remove("done"); }, 1500);
  });
})();
