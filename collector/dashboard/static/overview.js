// SiteWatch overview: re-render the tiles and open incidents from each server-sent snapshot.
// Everything from the server is put in with textContent or setAttribute, never as HTML.
"use strict";

(function () {
  const LABELS = { unmonitored: "not monitored" };

  function el(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function tile(site) {
    const article = el("article", {
      class: "tile status-" + site.status,
      "data-site": site.id,
      "data-status": site.status,
    });
    const head = el("header", { class: "tile-head" });
    head.append(
      el("a", { class: "tile-name", href: "/sites/" + encodeURIComponent(site.id) }, site.name),
      el("span", { class: "badge" }, LABELS[site.status] || site.status)
    );
    const meta = el("p", { class: "tile-meta" });
    meta.append(el("span", { class: "users" }, site.users + " users"));
    if (site.status_since && site.status !== "unmonitored") {
      meta.append(" · ", el("span", { class: "since", "data-since": site.status_since, "data-prefix": "for " }, ""));
    }
    const chips = el("ul", { class: "chips" });
    for (const link of site.links) {
      chips.append(
        el("li", { class: "chip status-" + link.status, title: link.kind + ", " + link.role + ": " + link.status }, link.id)
      );
    }
    const availability = el("p", { class: "availability" }, "Availability ");
    availability.append(el("span", { class: "value" }, site.availability));
    article.append(head, meta, chips, availability);
    return article;
  }

  function incident(item) {
    const li = el("li", {
      class: "incident prio-" + item.priority + (item.major ? " major" : ""),
      "data-incident": String(item.id),
    });
    const facts = el("span", { class: "facts" });
    facts.append(
      el("span", { class: "sites" }, item.sites),
      " · " + item.affected_users + " users · ",
      el("span", { class: "age", "data-since": item.opened_at, "data-prefix": "opened ", "data-suffix": " ago" }, "")
    );
    li.append(
      el("span", { class: "prio" }, item.priority),
      " ",
      el("a", { class: "title", href: "/incidents/" + item.id }, item.title),
      " ",
      el("span", { class: "state state-" + item.status }, item.status),
      " ",
      facts,
      " ",
      el("span", { class: "sla" + (item.breached ? " overdue" : ""), "data-due": item.due_at }, ""),
      " ",
      el("span", { class: "used" }, item.percent_used + "% of SLA used")
    );
    return li;
  }

  function render(snapshot) {
    window.SiteWatch.clock.skew = snapshot.now * 1000 - Date.now();
    document.getElementById("tiles").replaceChildren(...snapshot.sites.map(tile));
    document.getElementById("incidents").replaceChildren(...snapshot.incidents.map(incident));
    document.getElementById("no-incidents").hidden = snapshot.incidents.length > 0;
    document.getElementById("incident-count").textContent = String(snapshot.incidents.length);
    document.getElementById("summary").textContent = snapshot.summary;
    document.getElementById("updated").textContent = new Date(snapshot.now * 1000).toLocaleTimeString();
    const down = snapshot.sites.filter((s) => s.status === "down").length;
    document.title = (down ? "(" + down + " down) " : "") + "Overview · SiteWatch";
    window.SiteWatch.tick();
  }

  function start() {
    const banner = document.getElementById("connection");
    let source = null;

    function connect() {
      source = new EventSource("/events");
      source.addEventListener("message", (event) => {
        banner.hidden = true;
        render(JSON.parse(event.data));
      });
      source.addEventListener("expired", () => {
        source.close();
        location.assign("/login?next=" + encodeURIComponent(location.pathname));
      });
      source.addEventListener("error", () => {
        banner.hidden = false;
        if (source.readyState === EventSource.CLOSED) {
          // the browser gives up on an answer that is not a stream: try again ourselves
          setTimeout(connect, 3000);
        }
      });
    }
    connect();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
