// The page that shows a new key's secret once: copy it, or keep it for the
// try-it forms of this tab only (sessionStorage: gone when the tab closes,
// never sent to the portal).
"use strict";
(function () {
  const STORAGE_KEY = "sluice.portal.key";
  const status = document.getElementById("secret-status");
  const say = (text) => { if (status) status.textContent = text; };
  const copy = document.getElementById("copy-secret");
  if (copy) {
    copy.addEventListener("click", async () => {
      const field = document.getElementById(copy.dataset.copies);
      try {
        await navigator.clipboard.writeText(field.value);
        say("Copied.");
      } catch (_) {
        field.select();
        say("Selected: press Ctrl+C to copy.");
      }
    });
  }
  const use = document.getElementById("use-secret");
  if (use) {
    use.addEventListener("click", () => {
      const field = document.getElementById(use.dataset.secretFrom);
      try {
        window.sessionStorage.setItem(STORAGE_KEY, field.value);
        say("Kept for the try-it forms of this tab.");
      } catch (_) {
        say("This browser keeps nothing for the tab: paste the secret into try-it.");
      }
    });
  }
})();
