// jobwire dashboard: live updates over server-sent events, confirmations,
// select-all. Every HTML fragment comes rendered and escaped by the server.
"use strict";

function listen(container) {
  const source = new EventSource(container.dataset.events);
  for (const target of container.querySelectorAll("[data-live]")) {
    source.addEventListener(target.dataset.live, (event) => {
      target.innerHTML = event.data;
    });
  }
  // The server has nothing more to say (the job finished): do not reconnect.
  source.addEventListener("end", () => source.close());
  window.addEventListener("pagehide", () => source.close());
  document.body.dataset.live = "1";
}

document.addEventListener("DOMContentLoaded", () => {
  for (const container of document.querySelectorAll("[data-events]")) {
    listen(container);
  }
  for (const box of document.querySelectorAll("[data-select-all]")) {
    box.addEventListener("change", () => {
      for (const item of document.querySelectorAll(`input[name="${box.dataset.selectAll}"]`)) {
        item.checked = box.checked;
      }
    });
  }
});

document.addEventListener("submit", (event) => {
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
