// The console's only script: "select all" on the dead-letter list, and a job's progress bar
// refreshed every second until the job finishes. Pages work without it.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const all = document.querySelector("[data-select-all]");
  if (all) {
    all.addEventListener("change", () => {
      for (const box of document.querySelectorAll('input[name="id"]')) box.checked = all.checked;
    });
  }

  const job = document.querySelector("[data-job]");
  if (!job || job.dataset.finished === "yes") return;
  const timer = setInterval(async () => {
    const answer = await fetch(`/jobs/${job.dataset.job}.json`, { credentials: "same-origin" });
    if (!answer.ok) return;
    const state = await answer.json();
    job.querySelector("[data-progress]").value = state.done;
    job.querySelector("[data-done]").textContent = state.done;
    job.querySelector("[data-failed]").textContent = state.failed;
    if (state.finished) {
      clearInterval(timer);
      window.location.reload();  // the finished page lists the failures
    }
  }, 1000);
});
