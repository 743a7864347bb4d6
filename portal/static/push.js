/* Pawpost Web Push: subscribes this browser when the pet parent turns push notifications on.
 *
 * Load it with <script src="{{ url_for('static', filename='push.js') }}" defer></script> on a
 * signed-in portal page that has:
 *   <meta name="csrf-token" content="{{ csrf_token() }}">  sent as the X-CSRFToken header; without
 *                                                           it, the first csrf_token form field is sent
 *   <button type="button" id="enable-push">                 subscribes this browser on click
 *   <button type="button" id="disable-push">  (optional)    removes this browser's subscription
 *   <p id="push-status" role="status">        (optional)    receives each outcome as a sentence
 * Storing a subscription also turns the client's push preference on. The preferences form turns
 * push off for every device, while #disable-push only removes this browser's subscription.
 */
(function () {
  "use strict";

  var WORKER_URL = "/static/sw.js";
  var enableButton = document.getElementById("enable-push");
  var disableButton = document.getElementById("disable-push");

  function say(text) {
    var status = document.getElementById("push-status");
    if (status) {
      status.textContent = text;
    }
  }

  function setDisabled(disabled) {
    [enableButton, disableButton].forEach(function (button) {
      if (button) {
        button.disabled = disabled;
      }
    });
  }

  function post(url, body) {
    var token = document.querySelector('meta[name="csrf-token"]') || document.querySelector('input[name="csrf_token"]');
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      // Portal pages send no Referer by default, but Flask-WTF requires one on HTTPS.
      referrerPolicy: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": token ? token.content || token.value : "" },
      body: JSON.stringify(body),
    }).then(function (response) {
      if (response.ok) {
        return response.json();
      }
      return response.json().then(
        function (data) { throw new Error(data.error.message); },
        function () { throw new Error("The server responded with status " + response.status + ". Reload the page and try again."); }
      );
    });
  }

  // PushManager.subscribe needs the key as bytes, but the server sends unpadded base64url.
  function keyBytes(base64url) {
    var base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    var binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    return Uint8Array.from(binary, function (character) { return character.charCodeAt(0); });
  }

  function fetchKey() {
    return fetch("/push/key", { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) {
        throw new Error("Notifications are not available from the Pet Portal right now. Try email notifications instead.");
      }
      return response.json();
    });
  }

  function enable() {
    setDisabled(true);
    say("Turning on notifications.");
    Notification.requestPermission()
      .then(function (permission) {
        if (permission !== "granted") {
          throw new Error("Notifications are blocked for this site. Allow them in your browser's site settings, then try again.");
        }
        return Promise.all([fetchKey(), navigator.serviceWorker.register(WORKER_URL)]);
      })
      .then(function (results) {
        var options = { userVisibleOnly: true, applicationServerKey: keyBytes(results[0].public_key) };
        return results[1].pushManager.subscribe(options);
      })
      .then(function (subscription) { return post("/push/subscriptions", subscription.toJSON()); })
      .then(function () { say("Notifications are on for this device."); })
      .catch(function (error) { say(error.message); })
      .then(function () { setDisabled(false); });
  }

  function disable() {
    setDisabled(true);
    navigator.serviceWorker.register(WORKER_URL)
      .then(function (registration) { return registration.pushManager.getSubscription(); })
      .then(function (subscription) {
        if (!subscription) {
          return null;
        }
        var endpoint = subscription.endpoint;
        return subscription.unsubscribe().then(function () {
          // An unsubscribed endpoint is dead. If this request fails, the next push to it
          // gets 410 and the worker deletes the subscription.
          return post("/push/subscriptions/delete", { endpoint: endpoint }).catch(function () { return null; });
        });
      })
      .then(function () { say("Notifications are off for this device."); })
      .catch(function (error) { say(error.message); })
      .then(function () { setDisabled(false); });
  }

  if (!enableButton && !disableButton) {
    return;
  }
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
    say("This browser cannot show notifications from the Pet Portal. Try email notifications instead.");
    setDisabled(true);
    return;
  }
  if (enableButton) {
    enableButton.addEventListener("click", enable);
  }
  if (disableButton) {
    disableButton.addEventListener("click", disable);
  }
})();
