/* Pawpost Web Push: subscribes this browser when the pet parent turns push notifications on.
 *
 * Load it with <script src="{{ url_for('static', filename='push.js') }}" defer></script> on a
 * signed-in portal page that has:
 *   <meta name="csrf-token" content="{{ csrf_token() }}">  sent as the X-CSRFToken header
 *   <button type="button" id="enable-push">                 subscribes this browser on click
 *   <button type="button" id="disable-push">  (optional)    removes this browser's subscription
 *   <p id="push-status" role="status">        (optional)    receives each outcome as a sentence
 * A stored subscription also turns the client's push preference on. Turning push off for every
 * device is the preferences form's job; #disable-push only forgets this browser.
 */
(function () {
  "use strict";

  var enableButton = document.getElementById("enable-push");
  var disableButton = document.getElementById("disable-push");
  if (!enableButton && !disableButton) {
    return;
  }
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
    say("This browser cannot show notifications from the Pet Portal. Try email notifications instead.");
    setDisabled(true);
    return;
  }

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
    var token = document.querySelector('meta[name="csrf-token"]');
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      // The portal pages send no Referer by default; Flask-WTF's HTTPS check needs one.
      referrerPolicy: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": token ? token.content : "" },
      body: JSON.stringify(body),
    }).then(function (response) {
      if (response.ok) {
        return response.json();
      }
      return response.json().then(
        function (data) { throw new Error(data.error.message); },
        function () { throw new Error("The server answered " + response.status + ". Reload the page and try again."); }
      );
    });
  }

  // PushManager.subscribe needs the key as bytes; the server sends unpadded base64url.
  function keyBytes(base64url) {
    var base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    var binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    return Uint8Array.from(binary, function (character) { return character.charCodeAt(0); });
  }

  function registration() {
    return navigator.serviceWorker.register(document.currentScript ? "" : "", { scope: "/" });
  }

  function enable() {
    setDisabled(true);
    say("Turning on notifications…");
    Notification.requestPermission()
      .then(function (permission) {
        if (permission !== "granted") {
          throw new Error("Notifications are blocked for this site. Allow them in your browser's site settings, then try again.");
        }
        return Promise.all([fetch("/push/key", { credentials: "same-origin" }), navigator.serviceWorker.register(WORKER_URL)]);
      })
      .then(function (results) {
        if (!results[0].ok) {
          throw new Error("Notifications are not available on this server right now.");
        }
        return results[0].json().then(function (key) {
          return results[1].pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key.public_key) });
        });
      })
      .then(function (subscription) { return post("/push/subscriptions", subscription.toJSON()); })
      .then(function () { say("Notifications are on for this device."); })
      .catch(function (error) { say(error.message); })
      .then(function () { setDisabled(false); });
  }

  function disable() {
    setDisabled(true);
    navigator.serviceWorker.getRegistration(WORKER_URL)
      .then(function (found) { return found ? found.pushManager.getSubscription() : null; })
      .then(function (subscription) {
        if (!subscription) {
          return null;
        }
        return post("/push/subscriptions/delete", { endpoint: subscription.endpoint }).then(function () {
          return subscription.unsubscribe();
        });
      })
      .then(function () { say("Notifications are off for this device."); })
      .catch(function (error) { say(error.message); })
      .then(function () { setDisabled(false); });
  }

  var WORKER_URL = "/static/sw.js";
  if (enableButton) {
    enableButton.addEventListener("click", enable);
  }
  if (disableButton) {
    disableButton.addEventListener("click", disable);
  }
})();
