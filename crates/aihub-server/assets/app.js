// AI Hub dashboard: the little the pages need beyond plain HTML forms. Every page works
// without it. Served from /assets (CSP: no inline script).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Copy buttons: data-copy names the element whose text is copied.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      if (!source || !navigator.clipboard) return;
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        button.textContent = button.dataset.copied || button.textContent;
      } catch (_) {
        // Clipboard refused (no permission): the text stays selectable by hand.
      }
    });
  }
  // Selects marked data-autosubmit submit their form on change (the button stays for no-JS).
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form && select.form.submit());
  }
  // Forms marked data-confirm ask before they are sent (the server needs no JS for this).
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
/* API keys, budgets and alerts, rate limits */
// Forms marked data-confirm ask before they are sent (deleting a budget or a limit, rotating a
// webhook secret); without JavaScript they are sent as they are.
document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
