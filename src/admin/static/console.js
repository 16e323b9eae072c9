/* global document */
// The console's only script: "select all" on list pages. Every page works without it.
document.addEventListener('DOMContentLoaded', () => {
  const all = document.getElementById('select-all');
  if (!all) return;
  all.addEventListener('change', () => {
    for (const box of document.querySelectorAll('input[type=checkbox][name=sel]')) box.checked = all.checked;
  });
});
