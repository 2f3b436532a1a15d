window.__errors=[];addEventListener('error',function(e){window.__errors.push(String(e.message));
var n=document.getElementById('errors');if(n){n.hidden=false;n.textContent='script error: '+window.__errors.join('; ');}});
