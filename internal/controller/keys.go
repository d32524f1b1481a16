package controller

import (
	"context"
	"crypto/ecdh"
	"fmt"
	"maps"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/artifact"
	"github.com/wasmbed/wasmbed/internal/issuer"
)

// Keys holds the issuer's keys: the platform signing key and the issuer
// key. On first use it reads their Secrets from the system namespace,
// creating them when absent, and publishes the public halves in the
// wasmbed-issuer ConfigMap. It is safe for concurrent use; a failed load is
// retried by the next caller.
type Keys struct {
	// Client reads and writes the Secrets and the ConfigMap directly
	// (never through a cache: Secrets are not cached).
	Client client.Client
	// Namespace is the system namespace.
	Namespace string

	mu     sync.Mutex
	signer *artifact.Signer
	issuer *ecdh.PrivateKey
}

// Signer returns the artifact signer.
func (k *Keys) Signer(ctx context.Context) (*artifact.Signer, error) {
	if err := k.load(ctx); err != nil {
		return nil, err
	}
	return k.signer, nil
}

// IssuerKey returns the issuer key.
func (k *Keys) IssuerKey(ctx context.Context) (*ecdh.PrivateKey, error) {
	if err := k.load(ctx); err != nil {
		return nil, err
	}
	return k.issuer, nil
}

// Start loads the keys and publishes them when the manager starts, so that
// gateways and clients find the ConfigMap before the first Application.
// A failure is logged, not fatal: reconcilers load the keys again when they
// need them.
func (k *Keys) Start(ctx context.Context) error {
	if err := k.load(ctx); err != nil {
		log.FromContext(ctx).Error(err, "load the issuer keys; retried when needed")
	}
	return nil
}

func (k *Keys) load(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.signer != nil {
		return nil
	}
	signData, err := k.secret(ctx, wasmbedv1.SigningKeySecret, wasmbedv1.SigningKeySecretKey, func() ([]byte, error) {
		key, err := issuer.GenerateSigningKey()
		if err != nil {
			return nil, err
		}
		return issuer.EncodeSigningKey(key)
	})
	if err != nil {
		return err
	}
	signKey, err := issuer.ParseSigningKey(signData)
	if err != nil {
		return fmt.Errorf("secret %s/%s: %w", k.Namespace, wasmbedv1.SigningKeySecret, err)
	}
	issuerData, err := k.secret(ctx, wasmbedv1.IssuerKeySecret, wasmbedv1.IssuerKeySecretKey, func() ([]byte, error) {
		key, err := issuer.GenerateIssuerKey()
		if err != nil {
			return nil, err
		}
		return key.Bytes(), nil
	})
	if err != nil {
		return err
	}
	issuerKey, err := issuer.ParseIssuerKey(issuerData)
	if err != nil {
		return fmt.Errorf("secret %s/%s: %w", k.Namespace, wasmbedv1.IssuerKeySecret, err)
	}
	signer, err := artifact.NewSigner(signKey)
	if err != nil {
		return err
	}
	pub := &issuer.Public{SigningKey: signer.PublicKey(), IssuerKey: issuerKey.PublicKey()}
	if err := k.publish(ctx, pub.Data()); err != nil {
		return err
	}
	k.signer, k.issuer = signer, issuerKey
	return nil
}

// secret returns the data key of Secret name, creating the Secret with
// generate's value when it does not exist. Two controllers starting at once
// agree: the second create fails and the Secret is read again.
func (k *Keys) secret(ctx context.Context, name, key string, generate func() ([]byte, error)) ([]byte, error) {
	s := &corev1.Secret{}
	err := k.Client.Get(ctx, client.ObjectKey{Namespace: k.Namespace, Name: name}, s)
	if err == nil {
		if len(s.Data[key]) == 0 {
			return nil, fmt.Errorf("secret %s/%s has no %q", k.Namespace, name, key)
		}
		return s.Data[key], nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("get secret %s/%s: %w", k.Namespace, name, err)
	}
	value, err := generate()
	if err != nil {
		return nil, err
	}
	s = &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: name, Labels: map[string]string{wasmbedv1.LabelComponent: wasmbedv1.ComponentController}},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{key: value},
	}
	if err := k.Client.Create(ctx, s); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return k.secret(ctx, name, key, generate)
		}
		return nil, fmt.Errorf("create secret %s/%s: %w", k.Namespace, name, err)
	}
	return value, nil
}

// publish writes the public halves into the issuer ConfigMap.
func (k *Keys) publish(ctx context.Context, data map[string]string) error {
	cm := &corev1.ConfigMap{}
	err := k.Client.Get(ctx, client.ObjectKey{Namespace: k.Namespace, Name: wasmbedv1.IssuerConfigMap}, cm)
	switch {
	case apierrors.IsNotFound(err):
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: wasmbedv1.IssuerConfigMap, Labels: map[string]string{wasmbedv1.LabelComponent: wasmbedv1.ComponentController}},
			Data:       data,
		}
		if err := k.Client.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create configmap %s/%s: %w", k.Namespace, wasmbedv1.IssuerConfigMap, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("get configmap %s/%s: %w", k.Namespace, wasmbedv1.IssuerConfigMap, err)
	case maps.Equal(cm.Data, data):
		return nil
	}
	cm.Data = data
	if err := k.Client.Update(ctx, cm); err != nil {
		return fmt.Errorf("update configmap %s/%s: %w", k.Namespace, wasmbedv1.IssuerConfigMap, err)
	}
	return nil
}
