// SiteWatch dashboard: ticking durations and SLA countdowns. Plain JavaScript, no build step.
"use strict";

(function () {
  // The server's clock minus ours, in ms: overview.js sets it from each snapshot, so a wall
  // screen with a wrong clock still counts down to the right moment.
  const clock = { skew: 0 };

  // The same short form as the server's render.duration: "3m 05s", "2h 13m", "4d 2h".
  function duration(seconds) {
    const whole = Math.max(Math.floor(seconds), 0);
    const days = Math.floor(whole / 86400);
    const hours = Math.floor((whole % 86400) / 3600);
    const minutes = Math.floor((whole % 3600) / 60);
    const secs = whole % 60;
    const two = (n) => String(n).padStart(2, "0");
    if (days) return days + "d " + hours + "h";
    if (hours) return hours + "h " + two(minutes) + "m";
    if (minutes) return minutes + "m " + two(secs) + "s";
    return secs + "s";
  }

  function tick() {
    const now = Date.now() + clock.skew;
    for (const el of document.querySelectorAll("[data-since]")) {
      const since = Date.parse(el.dataset.since);
      if (Number.isNaN(since)) continue;
      el.textContent =
        (el.dataset.prefix || "") + duration((now - since) / 1000) + (el.dataset.suffix || "");
    }
    for (const el of document.querySelectorAll("[data-due]")) {
      const due = Date.parse(el.dataset.due);
      if (Number.isNaN(due)) continue;
      const left = (due - now) / 1000;
      el.textContent = left >= 0 ? "due in " + duration(left) : "overdue by " + duration(-left);
      el.classList.toggle("overdue", left < 0);
    }
  }

  window.SiteWatch = { clock: clock, duration: duration, tick: tick };
  document.addEventListener("DOMContentLoaded", tick);
  setInterval(tick, 1000);
})();
