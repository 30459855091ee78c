// Live updates for the hpflow dashboard: every refresh interval, fetch the page's
// main section again (rendered by the server, so escaping stays server-side) and
// swap it in. Without JavaScript the pages are complete, just not live.
(function () {
  'use strict';
  var refresh = parseInt(document.body.getAttribute('data-refresh'), 10);
  var main = document.getElementById('main');
  var status = document.getElementById('live-status');
  if (!main || !(refresh > 0) || !window.fetch || !window.DOMParser) return;
  var timer = 0;
  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(update, refresh * 1000);
  }
  function update() {
    if (document.hidden) return; // resumed by visibilitychange
    var url = new URL(window.location.href);
    url.searchParams.set('partial', '1');
    url.hash = '';
    fetch(url.toString(), { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'text/html' } })
      .then(function (r) {
        if (!r.ok) throw new Error('HTTP ' + r.status);
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        main.replaceChildren.apply(main, Array.prototype.slice.call(doc.body.childNodes));
        if (status) status.textContent = '· live';
      })
      .catch(function () {
        if (status) status.textContent = '· connection lost, retrying';
      })
      .then(schedule);
  }
  document.addEventListener('visibilitychange', function () {
    if (!document.hidden) update();
  });
  if (status) status.textContent = '· live';
  schedule();
})();
