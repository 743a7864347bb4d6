// Pawpost service worker: shows Web Push notifications and opens the message on tap.
// The payload is JSON from notifier/push.py, {title, body, url, tag}, and never contains the message text.
"use strict";

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (error) {
    // A payload that is not JSON still gets a generic notification.
  }
  event.waitUntil(
    self.registration.showNotification(data.title || "Pawpost", {
      body: data.body || "You have a new message in your Pet Portal.",
      tag: data.tag,
      data: { url: data.url || "/inbox" },
    })
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = new URL(event.notification.data.url, self.location.origin);
  // Only Pawpost's own pages open from a notification.
  if (url.origin !== self.location.origin) {
    return;
  }
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      const open = windows.find((window) => window.url === url.href);
      return open ? open.focus() : self.clients.openWindow(url.href);
    })
  );
});
