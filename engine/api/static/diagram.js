// Pan and zoom for every diagram drawn inline on a dashboard page (a `.diagram` holding an
// SVG): a toolbar of zoom out, zoom in, fit, actual size, find a state and full screen;
// Ctrl+wheel (or a trackpad's pinch) and two fingers zoom at the pointer, dragging pans, and
// the frame scrolls. Keys on the focused frame: + and - zoom, 0 fits, f toggles full screen, Escape
// leaves it. The view of each diagram (by its element id) is kept when the page swaps its
// live part or another script redraws the SVG in place (time travel).
(function () {
  const MIN = 0.005, MAX = 6, STEP = 1.5, PT = 4 / 3; // Graphviz sizes are points
  const views = new Map(); // diagram id -> {scale, left, top, fitted, full}

  function natural(svg) {
    const box = svg.viewBox && svg.viewBox.baseVal;
    let width = parseFloat(svg.getAttribute("width")) * PT;
    let height = parseFloat(svg.getAttribute("height")) * PT;
    if (!(width > 0 && height > 0) && box && box.width) {
      width = box.width * PT;
      height = box.height * PT;
    }
    return {width: width || 600, height: height || 400};
  }

  function attach(frame) {
    if (frame.dataset.zoomable) return;
    const svg = frame.querySelector("svg");
    if (!svg) return;
    frame.dataset.zoomable = "on";
    frame.classList.add("zoomable");
    frame.tabIndex = 0;
    const key = frame.id || "diagram";
    if (!frame.getAttribute("aria-label")) frame.setAttribute("aria-label", "Diagram: Ctrl+wheel or + and - to zoom, drag to pan");
    const box = document.createElement("div");
    box.className = "diagram-box";
    frame.before(box);
    const tools = document.createElement("div");
    tools.className = "diagram-tools";
    tools.setAttribute("role", "toolbar");
    tools.setAttribute("aria-label", "Diagram view");
    tools.setAttribute("aria-controls", frame.id || "");
    function button(label, text, name) {
      const made = document.createElement("button");
      made.type = "button";
      made.textContent = text;
      made.setAttribute("aria-label", label);
      made.title = label;
      made.className = "diagram-" + name;
      tools.append(made);
      return made;
    }
    const out = button("Zoom out", "−", "zoom-out");
    const into = button("Zoom in", "+", "zoom-in");
    const fit = button("Fit the diagram to the frame", "Fit", "fit");
    const actual = button("Actual size", "100%", "actual");
    const level = document.createElement("span");
    level.className = "diagram-level muted";
    level.setAttribute("aria-live", "polite");
    tools.append(level);
    const names = Array.from(svg.querySelectorAll("g[id^='state-']")).map((node) => node.id.slice(6));
    let find = null;
    if (names.length > 12) {
      find = document.createElement("input");
      find.type = "search";
      find.className = "diagram-find";
      find.placeholder = "find a state";
      find.setAttribute("aria-label", "Find a state in the diagram");
      const list = document.createElement("datalist");
      list.id = (frame.id || "diagram") + "-states";
      for (const name of names) list.append(new Option(name));
      find.setAttribute("list", list.id);
      tools.append(find, list);
    }
    const full = button("Full screen", "Full screen", "full");
    full.setAttribute("aria-pressed", "false");
    box.append(tools, frame);

    let view = views.get(key) || {scale: 1, left: 0, top: 0, fitted: true};
    views.set(key, view);

    function current() {
      return frame.querySelector("svg");
    }
    function fitScale() {
      const size = natural(current());
      const room = frame.clientWidth - 16;
      const tall = box.classList.contains("diagram-full") ? (frame.clientHeight - 16) / size.height : Infinity;
      return Math.max(MIN, Math.min(1, room / size.width, tall));
    }
    function settle() {
      // The frame keeps one height while zooming (the page does not jump): the fitted
      // drawing's, at least 12rem, at most 70% of the window.
      if (box.classList.contains("diagram-full")) return (frame.style.height = "");
      const size = natural(current());
      const fitted = size.height * Math.max(MIN, Math.min(1, (frame.clientWidth - 16) / size.width)) + 20;
      frame.style.height = Math.round(Math.min(window.innerHeight * 0.7, Math.max(fitted, 192))) + "px";
    }
    function apply() {
      const drawn = current();
      if (!drawn) return;
      const size = natural(drawn);
      if (view.fitted) view.scale = fitScale();
      drawn.style.width = size.width * view.scale + "px";
      drawn.style.height = size.height * view.scale + "px";
      level.textContent = Math.round(view.scale * 100) + "%";
      out.disabled = view.scale <= MIN;
      into.disabled = view.scale >= MAX;
    }
    function zoomTo(scale, x, y) {
      // Keep the point (x, y) of the frame over the same spot of the drawing.
      const px = x === undefined ? frame.clientWidth / 2 : x;
      const py = y === undefined ? frame.clientHeight / 2 : y;
      const spotX = (frame.scrollLeft + px) / view.scale;
      const spotY = (frame.scrollTop + py) / view.scale;
      view.scale = Math.min(MAX, Math.max(MIN, scale));
      view.fitted = false;
      apply();
      frame.scrollLeft = spotX * view.scale - px;
      frame.scrollTop = spotY * view.scale - py;
      remember();
    }
    function remember() {
      view.left = frame.scrollLeft;
      view.top = frame.scrollTop;
    }
    function show(name) {
      const node = current().querySelector("g[id='state-" + CSS.escape(name) + "']");
      if (!node) return false;
      // Large enough to read its label (about 16 px), then centred.
      // (The font size, not the drawn box: a browser draws tiny text larger than its scale.)
      const label = node.querySelector("text") || node;
      const height = parseFloat(label.getAttribute("font-size")) * PT || label.getBoundingClientRect().height / view.scale;
      if (height > 0) {
        view.scale = Math.min(MAX, Math.max(view.scale, 16 / height));
        view.fitted = false;
        apply();
      }
      const spot = node.getBoundingClientRect(), place = frame.getBoundingClientRect();
      frame.scrollLeft += spot.left + spot.width / 2 - (place.left + frame.clientWidth / 2);
      frame.scrollTop += spot.top + spot.height / 2 - (place.top + frame.clientHeight / 2);
      node.classList.add("found");
      setTimeout(() => node.classList.remove("found"), 2000);
      remember();
      return true;
    }
    function fullScreen(on) {
      view.full = on;
      box.classList.toggle("diagram-full", on);
      document.body.classList.toggle("diagram-open", on);
      full.setAttribute("aria-pressed", String(on));
      full.textContent = on ? "Close" : "Full screen";
      full.setAttribute("aria-label", on ? "Leave full screen" : "Full screen");
      if (on) box.setAttribute("role", "dialog"), box.setAttribute("aria-label", "Diagram, full screen");
      else box.removeAttribute("role"), box.removeAttribute("aria-label");
      settle();
      apply();
      frame.focus();
    }

    out.addEventListener("click", () => zoomTo(view.scale / STEP));
    into.addEventListener("click", () => zoomTo(view.scale * STEP));
    fit.addEventListener("click", () => { view.fitted = true; apply(); frame.scrollLeft = frame.scrollTop = 0; remember(); });
    actual.addEventListener("click", () => zoomTo(1));
    full.addEventListener("click", () => fullScreen(!box.classList.contains("diagram-full")));
    if (find) {
      find.addEventListener("change", () => show(find.value.trim()));
      find.addEventListener("keydown", (event) => { if (event.key === "Enter") { event.preventDefault(); show(find.value.trim()); } });
    }
    frame.addEventListener("wheel", (event) => {
      if (!event.ctrlKey && !event.metaKey) return; // a plain wheel scrolls
      event.preventDefault();
      const place = frame.getBoundingClientRect();
      zoomTo(view.scale * Math.exp(-event.deltaY / 300), event.clientX - place.left, event.clientY - place.top);
    }, {passive: false});
    frame.addEventListener("keydown", (event) => {
      if (event.target !== frame) return;
      const keys = {"+": () => zoomTo(view.scale * STEP), "=": () => zoomTo(view.scale * STEP), "-": () => zoomTo(view.scale / STEP), "0": () => fit.click(), "f": () => full.click()};
      if (event.key === "Escape" && box.classList.contains("diagram-full")) fullScreen(false);
      else if (keys[event.key]) keys[event.key]();
      else return;
      event.preventDefault();
    });
    box.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && box.classList.contains("diagram-full")) fullScreen(false);
    });
    // Two fingers pinch (one scrolls the frame natively, touch-action allows only that).
    const touches = new Map();
    let pinch = null;
    function spread() {
      const [a, b] = Array.from(touches.values());
      const place = frame.getBoundingClientRect();
      return {size: Math.hypot(a.x - b.x, a.y - b.y), x: (a.x + b.x) / 2 - place.left, y: (a.y + b.y) / 2 - place.top};
    }
    frame.addEventListener("pointerdown", (event) => {
      if (event.pointerType !== "touch") return;
      touches.set(event.pointerId, {x: event.clientX, y: event.clientY});
      if (touches.size === 2) pinch = {start: spread().size || 1, scale: view.scale};
    });
    frame.addEventListener("pointermove", (event) => {
      if (!touches.has(event.pointerId)) return;
      touches.set(event.pointerId, {x: event.clientX, y: event.clientY});
      if (!pinch || touches.size !== 2) return;
      const now = spread();
      zoomTo(pinch.scale * now.size / pinch.start, now.x, now.y);
    });
    for (const name of ["pointerup", "pointercancel", "pointerleave"]) {
      frame.addEventListener(name, (event) => {
        touches.delete(event.pointerId);
        if (touches.size < 2) pinch = null;
      });
    }
    let drag = null; // a mouse drags the drawing; touch scrolls the frame natively
    frame.addEventListener("pointerdown", (event) => {
      if (event.pointerType !== "mouse" || event.button !== 0 || event.target.closest("a")) return;
      drag = {x: event.clientX, y: event.clientY, left: frame.scrollLeft, top: frame.scrollTop};
      frame.setPointerCapture(event.pointerId);
      frame.classList.add("dragging");
    });
    frame.addEventListener("pointermove", (event) => {
      if (!drag) return;
      frame.scrollLeft = drag.left - (event.clientX - drag.x);
      frame.scrollTop = drag.top - (event.clientY - drag.y);
    });
    const drop = () => { drag = null; frame.classList.remove("dragging"); remember(); };
    frame.addEventListener("pointerup", drop);
    frame.addEventListener("pointercancel", drop);
    frame.addEventListener("scroll", remember, {passive: true});
    // Another script may put a new SVG in the frame (time travel): it gets the same view.
    new MutationObserver(() => {
      const left = view.left, top = view.top;
      apply();
      frame.scrollLeft = left;
      frame.scrollTop = top;
    }).observe(frame, {childList: true});
    window.addEventListener("resize", () => { settle(); if (view.fitted) apply(); });
    settle();
    if (view.full) fullScreen(true);
    apply();
    frame.scrollLeft = view.left;
    frame.scrollTop = view.top;
  }

  function attachAll(root) {
    for (const frame of (root || document).querySelectorAll(".diagram")) attach(frame);
  }
  document.addEventListener("turnout:swapped", (event) => attachAll(event.detail && event.detail.live));
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => attachAll());
  else attachAll();
})();
